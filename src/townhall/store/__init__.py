"""townhall.store"""
