"""radfuse.extract"""
