#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<reader>/): small valid files of
each format, so that the fuzzer starts from inputs that get past the magic numbers. The JPEG and
HDR seeds were written with stb_image_write, the GIF is the classic 1x1 one."""
import struct, zlib, gzip, os
base=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
for d in ('idx','npy','csv','image'): os.makedirs(f'{base}/{d}', exist_ok=True)
def w(path, data): open(f'{base}/{path}','wb').write(data)
# IDX: magic 0 0 type ndims, big-endian dims, data
w('idx/uint8-2x3.idx', bytes([0,0,8,2]) + struct.pack('>II',2,3) + bytes(range(6)))
w('idx/float-2.idx', bytes([0,0,0x0D,1]) + struct.pack('>I',2) + struct.pack('>ff',1.5,-2.0))
w('idx/int16-1x2x2.idx', bytes([0,0,0x0B,3]) + struct.pack('>III',1,2,2) + struct.pack('>hhhh',1,-1,300,-300))
w('idx/double-1.idx', bytes([0,0,0x0E,1]) + struct.pack('>I',1) + struct.pack('>d',3.25))
w('idx/uint8-2x3.idx.gz', gzip.compress(bytes([0,0,8,2]) + struct.pack('>II',2,3) + bytes(range(6)), mtime=0))
# NPY: magic, version, header length, header padded to 64 bytes with spaces and a newline
def npy(descr, shape, fortran, payload, version=1):
    shape_text = '(' + ', '.join(str(s) for s in shape) + (',)' if len(shape)==1 else ')')
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, 'True' if fortran else 'False', shape_text)
    lead = 10 if version == 1 else 12
    header += ' ' * ((64 - (lead + len(header) + 1) % 64) % 64) + '\n'
    size = struct.pack('<H', len(header)) if version == 1 else struct.pack('<I', len(header))
    return b'\x93NUMPY' + bytes([version, 0]) + size + header.encode('latin1') + payload
w('npy/float32-2x3.npy', npy('<f4', (2,3), False, struct.pack('<6f', *range(6))))
w('npy/int64-2x2-fortran.npy', npy('<i8', (2,2), True, struct.pack('<4q', 1,2,3,4)))
w('npy/bool-3.npy', npy('|b1', (3,), False, bytes([1,0,1])))
w('npy/float64-2-v2.npy', npy('<f8', (2,), False, struct.pack('<2d', 0.5, -1), version=2))
w('npy/uint8-scalar.npy', npy('|u1', (), False, bytes([7])))
w('npy/float16-0.npy', npy('<f2', (0,), False, b''))
# CSV
w('csv/plain.csv', b'a,b\n1,2\n3.5,-4e2\n')
w('csv/bom-crlf.csv', b'\xef\xbb\xbfa,b,c\r\n1,2,x\r\n\r\n4,5,y\r\n')
w('csv/quoted.csv', b'"a","b",c\n"1",2,"x, y"\n"-0.5",  7 ,"say ""hi"""\n')
w('csv/header-only.csv', b'b,a\n')
# Images: PNG (gray, RGB, RGBA, palette), BMP, PGM, PPM, TGA
def png(width, height, color_type, bit_depth, rows, palette=None):
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    raw = b''.join(b'\x00' + r for r in rows)
    out = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0))
    if palette: out += chunk(b'PLTE', palette)
    return out + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
w('image/gray-3x2.png', png(3, 2, 0, 8, [bytes([0,128,255]), bytes([10,20,30])]))
w('image/rgb-2x2.png', png(2, 2, 2, 8, [bytes([255,0,0, 0,255,0]), bytes([0,0,255, 9,9,9])]))
w('image/rgba-1x2.png', png(1, 2, 6, 8, [bytes([1,2,3,4]), bytes([5,6,7,8])]))
w('image/palette-2x1.png', png(2, 1, 3, 8, [bytes([0,1])], palette=bytes([255,0,0, 0,0,255])))
def bmp(width, height, pixels):  # 24-bit, bottom-up, rows padded to 4 bytes
    row = lambda r: r + b'\x00' * ((4 - len(r) % 4) % 4)
    data = b''.join(row(r) for r in reversed(pixels))
    header = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return b'BM' + struct.pack('<IHHI', 14 + 40 + len(data), 0, 0, 54) + header + data
w('image/rgb-2x2.bmp', bmp(2, 2, [bytes([0,0,255, 0,255,0]), bytes([255,0,0, 1,2,3])]))
w('image/gray-2x2.pgm', b'P5\n2 2\n255\n' + bytes([0, 64, 128, 255]))
w('image/rgb-1x1.ppm', b'P6\n1 1\n255\n' + bytes([1, 2, 3]))
w('image/rgb-2x1.tga', bytes([0,0,2, 0,0,0,0,0, 0,0,0,0]) + struct.pack('<HH', 2, 1) + bytes([24, 0]) + bytes([1,2,3, 4,5,6]))
