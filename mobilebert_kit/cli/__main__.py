from mobilebert_kit.cli import main

main(prog_name="mbk")
