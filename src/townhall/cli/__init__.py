"""townhall.cli"""
