"""townhall.spaces"""
