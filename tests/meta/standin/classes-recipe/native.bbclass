# Stand-in (tests only): the native variant of a recipe.
PN = "${BPN}-native"
CLASSOVERRIDE = "class-native"
