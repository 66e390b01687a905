"""radfuse.fuse"""
