"""The second stage's alignment on constructed posteriors (awesearch/verify.py)."""

import numpy as np

from awesearch.phonetic import BLANK, N_CLASSES, word_targets
from awesearch.verify import align, frame_scores, merge_windows, pad_regions

PRINCE = [["P", "R", "IH", "N", "S"]]


def spoken(targets, frames_each=3, lead=5, trail=5, pause_frames=0, p=0.9):
    """Log-posteriors of a head that hears `targets` (ids) one spike each, blanks between."""
    seq = []
    for c in targets:
        seq.append(c)
    T = lead + len(seq) * frames_each + trail + pause_frames
    lp = np.full((T, N_CLASSES), np.log((1 - p) / (N_CLASSES - 1)), np.float32)
    lp[:, BLANK] = np.log(p)
    t = lead
    for i, c in enumerate(seq):
        lp[t] = np.log((1 - p) / (N_CLASSES - 1))
        lp[t, c] = np.log(p)
        t += frames_each
        if pause_frames and i == len(seq) // 2:
            t += pause_frames
    return lp


def run(regions, target):
    d, lengths = pad_regions([frame_scores(r) for r in regions])
    return align(d, lengths, target)


def test_the_word_beats_its_confusable_and_the_longer_word_and_finds_its_edges():
    target = word_targets(PRINCE)
    a = run([spoken(target), spoken(word_targets([["B", "R", "IH", "N", "S"]])),
             spoken(word_targets([["P", "R", "IH", "N", "S", "EH", "S"]]))], target)
    assert a.llr[0] > -1e-3  # spelled exactly: the head's own best path
    assert a.llr[1] < -3 and a.llr[2] < -3  # a phoneme / the trailing word boundary is missing
    assert a.worst_token[0] > -1e-3 and a.worst_token[1] < -3
    # first phoneme spike at lead + 1 token * 3 frames, last phoneme at lead + 5 * 3
    assert a.start_frame[0] == 8 and a.end_frame[0] == 21
    assert a.span_start_frame[0] == 5


def test_a_phrase_is_found_across_a_pause():
    target = word_targets([["DH", "AH"], ["B", "AA", "K", "S"]])
    a = run([spoken(target, pause_frames=15), spoken(word_targets([["DH", "AH"], ["B", "UH", "K", "S"]]), pause_frames=15)], target)
    assert a.llr[0] > -1e-3 and a.llr[1] < -3


def test_padding_never_helps_and_batches_agree_with_single_regions():
    target = word_targets(PRINCE)
    regions = [spoken(target, lead=3), spoken(target, lead=40, trail=30), spoken(word_targets([["P", "R", "IH", "N", "T"]]))]
    together = run(regions, target)
    for i, r in enumerate(regions):
        alone = run([r], target)
        assert np.isclose(alone.llr[0], together.llr[i])
        assert alone.start_frame[0] == together.start_frame[i]


def test_merge_windows_joins_overlaps_per_file_and_caps_length():
    files = np.array([0, 0, 1, 0, 0])
    starts = np.array([1.0, 1.2, 1.0, 5.0, 5.3])
    ends = np.array([1.5, 1.9, 1.4, 5.5, 5.8])
    scores = np.array([0.5, 0.7, 0.6, 0.2, 0.3])
    regions = merge_windows(files, starts, ends, scores, 0.3, 0.3)
    assert [(r.file, r.frame_lo, r.frame_hi, round(r.cosine, 2)) for r in regions] == [
        (0, 35, 110, 0.7), (0, 235, 305, 0.3), (1, 35, 85, 0.6)
    ]
    capped = merge_windows(np.zeros(30, int), np.arange(30) * 0.5, np.arange(30) * 0.5 + 1.0, np.ones(30), 0.3, 0.3, max_region_s=3.0)
    assert len(capped) > 1 and all(r.frame_hi - r.frame_lo <= 3.0 * 50 + 1 for r in capped)


def test_adjacent_tokens_need_no_blank_between_them():
    """CTC may go straight from one token to the next (different) one; repeats of a token stay in it."""
    target = word_targets(PRINCE)
    ids = [BLANK, target[0], target[1], target[1], target[2], target[3], BLANK, target[4], target[5], target[6], BLANK]
    lp = np.full((len(ids), N_CLASSES), -20.0, np.float32)
    lp[np.arange(len(ids)), ids] = 0.0
    a = run([lp], target)
    assert a.llr[0] > -1e-3
    assert a.start_frame[0] == 2 and a.end_frame[0] == 9


def test_a_region_too_short_for_the_target_gets_floor_features_not_minus_infinity():
    from awesearch.detect import LLR_FLOOR_PER_TOKEN, features

    target = word_targets([["P", "R", "IH", "N", "S", "EH", "S"]])  # 9 tokens
    short = spoken(word_targets([["P", "R"]]), frames_each=1, lead=1, trail=1)[:5]  # 5 frames
    a = run([short], target)
    f = features(a, np.array([0.5]))
    assert np.all(np.isfinite(f)) and f[0, 1] == LLR_FLOOR_PER_TOKEN and f[0, 3] == LLR_FLOOR_PER_TOKEN * len(target)


def test_a_substitution_the_head_often_makes_costs_less_than_one_it_never_makes():
    """Spoken "prince" decoded as P R EH N S: with the head's confusions (IH often heard as EH) the query
    P R IH N S scores closer to a perfect match than without them, and a substitution the head never makes
    (IH heard as K) is priced as before."""
    from awesearch.g2p import PHONEMES
    from awesearch.verify import substitution_matrix

    ih, eh, k = (PHONEMES.index(p) for p in ("IH", "EH", "K"))
    confusion = np.eye(len(PHONEMES))
    confusion[ih] = 0.0
    confusion[ih, ih], confusion[ih, eh] = 0.6, 0.4
    s = substitution_matrix(confusion, 0.5)
    assert s.shape == (N_CLASSES, N_CLASSES) and s[BLANK, BLANK] == 1.0 and np.allclose(s.sum(1), 1.0)
    heard_eh = spoken(word_targets([["P", "R", "EH", "N", "S"]]))
    heard_k = spoken(word_targets([["P", "R", "K", "N", "S"]]))
    target = word_targets(PRINCE)

    def llr(lp, sub):
        d, lengths = pad_regions([frame_scores(lp, sub)])
        return align(d, lengths, target).llr[0]

    assert llr(heard_eh, s) > llr(heard_eh, None) + 1.0
    assert abs(llr(heard_k, s) - llr(heard_k, None)) < 0.5
    assert llr(spoken(target), s) > -1e-3  # the spoken target itself still aligns perfectly
    assert np.allclose(frame_scores(heard_eh, None), frame_scores(heard_eh))
