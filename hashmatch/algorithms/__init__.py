"""Built-in hash algorithms, one module each; the registry imports every public module here."""
