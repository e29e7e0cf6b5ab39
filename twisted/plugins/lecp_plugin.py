from twisted.application.service import ServiceMaker

lecp = ServiceMaker("lecp", "lecp.tap", "Free, automatic Let's Encrypt certificates for every cPanel user", "lecp")
