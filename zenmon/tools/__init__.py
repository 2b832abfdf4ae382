"""zenmon's tools: programs that use the library as any user does (the library never imports them)."""
