"""radfuse.evaluate"""
