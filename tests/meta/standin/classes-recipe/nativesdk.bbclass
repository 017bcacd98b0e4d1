# Stand-in (tests only): the nativesdk variant of a recipe.
PN = "nativesdk-${BPN}"
CLASSOVERRIDE = "class-nativesdk"
