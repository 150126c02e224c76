from greet import greet


def main(context):
    return greet("fizz")
