# ?slow sleeps past any small function timeout; otherwise it answers at once.
def handler(context)
  sleep 30 if context.request.params.key?('slow')
  'awake'
end
