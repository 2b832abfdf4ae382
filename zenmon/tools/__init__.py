"""zenmon's tools: programs that use the library as any user does.

The library never imports them.
"""
