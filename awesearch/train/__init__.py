"""Training-time code: synthetic corpus, augmentation, hard negatives (never needed at run time)."""
