def explode():
    raise RuntimeError("boom from the function")  # FIZZ-E2E-THROW


def main(context):
    return explode()
