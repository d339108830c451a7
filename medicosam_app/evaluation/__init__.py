"""How well the interactive model serves a site's own data: simulated annotators, Dice per click, NoC."""
