"""Entry points with Tensor2Robot's names and flags (``python -m t2r.bin.run_t2r_trainer``).

This is the edge where gin binds the library: nothing in the library reads gin.
"""
