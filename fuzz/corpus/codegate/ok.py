import re
x = [m.group() for m in re.finditer('a', 'banana')]
print(x)
