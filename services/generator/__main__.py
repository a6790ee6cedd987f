from services.generator.server import serve

serve()
