"""Small runnable examples of t2r, used by ``t2r demo`` and the docs."""
