"""townhall.delivery"""
