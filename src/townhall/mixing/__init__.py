"""townhall.mixing"""
