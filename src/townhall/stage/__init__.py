"""townhall.stage"""
