"""radfuse.models"""
