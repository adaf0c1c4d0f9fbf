"""Reports: the mapping table stored in ``.nmc`` files, and ``nmc report`` (HTML, Markdown, JSON).

``mapping_table`` belongs to the compiler proper (it reads the graph and the program);
``report`` is a separate step like ``compiler/verify.py``: it imports the runtime for timing
and for runs on inputs.
"""
