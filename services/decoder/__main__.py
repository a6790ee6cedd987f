from services.decoder.server import serve

serve()
