"""Plain anatomical processing functions (conform, brain mask, registration) behind the interfaces."""
