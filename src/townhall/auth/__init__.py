"""townhall.auth"""
