def main(context):
    print("Hello, world!")
