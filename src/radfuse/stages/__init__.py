"""radfuse.stages"""
