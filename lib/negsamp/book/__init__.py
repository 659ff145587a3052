"""The book machinery: chapter discovery, the papermill runner, the ledger and page rendering."""
