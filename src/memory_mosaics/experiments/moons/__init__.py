"""Three moons (paper Section 5, Figures 3, 4, 5 and 10): predictive disentanglement with one or three memories."""
