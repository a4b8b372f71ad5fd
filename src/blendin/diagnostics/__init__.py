"""Views of generations: ``html.trace_html`` (one self-contained page per answer)."""
