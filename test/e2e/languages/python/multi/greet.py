def greet(who):
    return "hello " + who + " from a second file"
