"""The model layer's newer parts. ``precision_choice``: which encoder precision this machine runs best,
measured, checked against fp32 and remembered."""
