"""Our OHIF build at /ohif/: its files, its configuration per server, and what each model offers per image layout."""
