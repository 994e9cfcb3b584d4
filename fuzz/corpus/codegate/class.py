class A:
    def __init__(self):
        self.v = 1
A().v
