"""Dataset converters: official layouts -> the files s2c reads."""
