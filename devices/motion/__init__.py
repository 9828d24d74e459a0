"""How simulated subjects move: paths, navigation, day plans and behaviours."""
