"""Reading data: image decoding (allow-list, limits, reduced decode, resize), image folders
and lists, captions, text tokenizers."""
