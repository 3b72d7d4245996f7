"""townhall.gate"""
