for a, (b, *c) in [(1, (2, 3, 4))]:
    print(a, b, c)
