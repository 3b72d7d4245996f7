"""townhall.api"""
