"""radfuse.data"""
