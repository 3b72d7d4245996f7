"""townhall.watch"""
