"""`awesearch serve`: a local web page to search, listen and export (app.py, media.py, static/)."""
