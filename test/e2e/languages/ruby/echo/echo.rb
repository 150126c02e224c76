require 'json'

# Answers the POSTed JSON body back as JSON, as a Rack triple.
def handler(context)
  body = JSON.parse(context.request.body.read)
  [200, { 'Content-Type' => 'application/json' }, [JSON.generate(body)]]
end
