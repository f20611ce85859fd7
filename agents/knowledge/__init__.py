"""Knowledge extraction: turn files uploaded by an agent's owner into citable chunks.

Pure functions with no Django dependency, so they are easy to test and safe to
run inside a background task:

* `sniff.detect(name, head, size)` decides a file's kind or refuses it.
* `parsing.parse(kind, data)` extracts its text as positioned sections.
* `chunking.chunk(sections)` splits those into overlapping chunks.
* `pipeline.extract(name, data)` runs all three.
"""
