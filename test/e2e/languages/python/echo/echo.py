def main(context):
    # Answers the parsed JSON body back as JSON.
    return context.json()
