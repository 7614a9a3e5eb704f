"""CT volumes in patient space (RAS+ mm), masks, anatomy relation graphs and phantoms.

Knows nothing of models.
"""
