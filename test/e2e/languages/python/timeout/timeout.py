import time


def main(context):
    # ?slow sleeps past any small function timeout; otherwise answers at once.
    if "slow" in context.query:
        time.sleep(30)
    return "awake"
