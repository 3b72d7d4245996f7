"""townhall.packaging"""
