"""The built-in "multilingual shapes" demo."""
