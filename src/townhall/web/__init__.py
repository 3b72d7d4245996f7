"""townhall.web"""
