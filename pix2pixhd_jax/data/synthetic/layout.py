"""What a scene holds and where: background, buildings along each side, the street and its
markings, then cars, persons, poles and street trees, placed in world metres and drawn
painter-style (far to near) into the canvas."""

import math

from pix2pixhd_jax.data.synthetic.geometry import Camera, Canvas
from pix2pixhd_jax.data.synthetic.styles import (
    CLASS_IDS, P_BORDER, P_GLASS, P_LAMP_G, P_LAMP_OFF, P_LAMP_R, P_LAMP_Y, P_LEGS, P_LIGHT, P_MARK, P_PLATE, P_SHADE,
    P_HAIR, P_SKIN, P_TAIL, P_TIRE, P_TRUNK, P_WINDOW, P_WINDOW_FAR, STYLES)


def _px_width(cam, X, z0, z1):
    """Projected width (px) of a segment along Z on the plane X = const."""
    return cam.f * abs(X) * (1.0 / z0 - 1.0 / z1)


def draw_background(cv: Canvas, cam: Camera):
    w, h = cam.width, cam.height
    cv.polygon([(0, 0), (w, 0), (w, h), (0, h)], CLASS_IDS["sky"])
    # Ground below the horizon defaults to terrain: it shows in building gaps and yards.
    cv.polygon([(0, cam.vy), (w, cam.vy), (w, h), (0, h)], CLASS_IDS["terrain"])


def draw_tree(cv, cam, X, Z, radius, trunk_height):
    veg = CLASS_IDS["vegetation"]
    cv.polygon(cam.wall_z(Z, X - 0.15, X + 0.15, 0.0, trunk_height + radius), veg, P_TRUNK)
    cx, cy = cam.xy(X, trunk_height + 0.8 * radius, Z)
    r = cam.f * radius / Z
    cv.ellipse(cx, cy, r, 1.1 * r, veg)


def _windows(cv, cam, X, z0, z1, height, win):
    """Window grid on a facade (plane X) as part decals, coarsened with distance."""
    floor_h, col_w, (u0, u1), (v0, v1) = win
    n_floors = int((height - 0.6) // floor_h)
    n_cols = int((z1 - z0 - 1.0) // col_w)
    if n_floors < 1 or n_cols < 1:
        return
    margin = 0.5 * ((z1 - z0) - n_cols * col_w)
    for i in range(n_floors):
        wy0, wy1 = (i + v0) * floor_h, (i + v1) * floor_h
        for j in range(n_cols):
            wz0 = z0 + margin + (j + u0) * col_w
            wz1 = z0 + margin + (j + u1) * col_w
            if cam.f * (wy1 - wy0) / wz0 < 1.2:
                break  # this floor is sub-pixel from here on
            if _px_width(cam, X, wz0, wz1) < 1.5:
                # Columns are sub-pixel from here: one blended strip for the rest.
                cv.decal(cam.wall_x(X, wy0, wy1, wz0, z1 - margin), P_WINDOW_FAR)
                break
            cv.decal(cam.wall_x(X, wy0, wy1, wz0, wz1), P_WINDOW)


def draw_buildings(cv, cam, rng, street, side, building_style):
    """Blocks of varying height along one side, with gaps (trees, hedges, fences)."""
    building, fence, veg = CLASS_IDS["building"], CLASS_IDS["fence"], CLASS_IDS["vegetation"]
    x_walk = street.walk_outer(side)
    glass = STYLES["building"][building_style] == "glass"
    elements = []  # (near depth, draw function), drawn far to near
    edge_items = []  # fences/hedges on the sidewalk edge: in front of all blocks
    z, z_end = street.z_near, rng.uniform(70.0, 170.0)
    park = rng.random() < 0.15  # no buildings on this side: trees and hedges only
    while z < z_end:
        if park or (z > 2.5 * street.z_near and rng.random() < 0.28):  # gap between blocks
            length = rng.uniform(4.0, 16.0)
            for _ in range(rng.integers(0, 3)):
                tz = rng.uniform(z, z + length)
                tx = x_walk + side * rng.uniform(1.5, 6.0)
                elements.append((tz, bind(draw_tree, cv, cam, tx, tz, rng.uniform(1.8, 3.5), rng.uniform(1.5, 3.0))))
            choice = rng.random()
            if choice < 0.35:
                edge_items.append((cam.wall_x(x_walk, 0.0, rng.uniform(1.0, 1.8), z, z + length), fence))
            elif choice < 0.6:
                edge_items.append((cam.wall_x(x_walk, 0.0, rng.uniform(0.8, 2.0), z, z + length), veg))
        else:
            length, height = rng.uniform(8.0, 32.0), rng.uniform(5.0, 24.0)
            setback = rng.uniform(1.5, 5.0) if rng.random() < 0.25 else 0.0
            xb = x_walk + side * setback
            if setback and rng.random() < 0.6:  # front yard behind a fence or a hedge
                kind = fence if rng.random() < 0.5 else veg
                edge_items.append((cam.wall_x(x_walk, 0.0, rng.uniform(0.9, 1.6), z, z + length), kind))
            win = (rng.uniform(3.0, 3.8), rng.uniform(2.4, 3.6),
                   (0.06, 0.94) if glass else (0.25, 0.72), (0.06, 0.94) if glass else (0.3, 0.78))

            def block(z0=z, z1=z + length, h=height, xb=xb, win=win):
                # Front wall (faces the camera, in shade), then the lit facade and its windows.
                cv.polygon(cam.wall_z(z0, xb, xb + side * 14.0, 0.0, h), building, P_SHADE)
                cv.polygon(cam.wall_x(xb, 0.0, h, z0, z1), building)
                _windows(cv, cam, xb, z0, z1, h, win)

            elements.append((z, block))
        z += length
    for _, fn in sorted(elements, key=lambda e: -e[0]):
        fn()
    for pts, ident in edge_items:
        cv.polygon(pts, ident)


def bind(fn, *args):
    return lambda: fn(*args)


def draw_street(cv, cam, rng, street):
    road, walk, terrain = CLASS_IDS["road"], CLASS_IDS["sidewalk"], CLASS_IDS["terrain"]
    zn, zf = street.z_near, street.z_far
    cv.polygon(cam.ground(-street.road[-1], street.road[1], zn, zf), road)
    for side in (-1, 1):
        edge = side * street.road[side]
        inner, outer = street.walk_inner(side), street.walk_outer(side)
        if street.verge[side]:
            cv.polygon(cam.ground(edge, inner, zn, zf), terrain)
        cv.polygon(cam.ground(inner, outer, zn, zf), walk)
        # Kerb: the vertical face along the road edge, in shade.
        cv.polygon(cam.wall_x(edge, 0.0, 0.14, zn, zf), terrain if street.verge[side] else walk, P_SHADE)
        if rng.random() < 0.5:  # solid edge line
            x = edge - side * 0.35
            cv.decal(cam.ground(x - 0.07, x + 0.07, zn, zf), P_MARK)
    # Dashed centre line.
    xc = 0.5 * (street.road[1] - street.road[-1]) + rng.uniform(-0.5, 0.5)
    dash, period = rng.uniform(2.0, 4.0), rng.uniform(6.0, 12.0)
    z = zn + rng.uniform(0, period)
    while z < 150.0:
        cv.decal(cam.ground(xc - 0.08, xc + 0.08, z, z + dash), P_MARK)
        z += period


def _draw_car(cv, cam, ident, xc, zr, length, width, body_h, roof_h):
    """A box car seen from behind: side, bonnet, cabin, rear; all parts one id.

    Paint dominates the visible pixels (wheels half hidden, windows framed by
    pillars) so the car's mean colour identifies its paint style.
    """
    half = 0.5 * width
    x0, x1 = xc - half, xc + half
    clear = 0.25
    side_visible = abs(xc) > half  # the side facing the street centre
    xs = xc - math.copysign(half, xc)
    if side_visible:
        for zw in (zr + length - 0.85, zr + 0.8):  # wheels behind the body: only the bottoms show
            cx, cy = cam.xy(xs, 0.3, zw)
            ry = cam.f * 0.3 / zw
            rx = max(0.3 * ry, cam.f * abs(xs) * 0.3 / (zw * zw))
            cv.ellipse(cx, cy, rx, ry, ident, P_TIRE)
        cv.polygon(cam.wall_x(xs, clear, body_h, zr, zr + length), ident, P_SHADE)
    # Cabin, inset from the body; its rear and side slope towards the roof.
    inset = 0.14
    cx0, cx1 = x0 + inset, x1 - inset
    zc0, zc1 = zr + 0.95, zr + length - 1.25
    ztop0, ztop1 = zc0 + 0.45, zc1 - 0.35
    rise = roof_h - body_h

    def slope_z(y, z_bottom, z_top):  # depth of the sloped window at height y
        return z_bottom + (y - body_h) / rise * (z_top - z_bottom)

    gy0, gy1 = body_h + 0.06, roof_h - 0.05  # glass inside the frame
    if side_visible:
        xw = cx0 if xc > 0 else cx1
        cv.polygon(cam.poly([(xw, body_h, zc0), (xw, roof_h, ztop0), (xw, roof_h, ztop1), (xw, body_h, zc1)]),
                   ident, P_SHADE)
        cv.polygon(cam.poly([(xw, gy0, slope_z(gy0, zc0, ztop0) + 0.12), (xw, gy1, slope_z(gy1, zc0, ztop0) + 0.12),
                             (xw, gy1, slope_z(gy1, zc1, ztop1) - 0.12), (xw, gy0, slope_z(gy0, zc1, ztop1) - 0.12)]),
                   ident, P_GLASS)
    cv.polygon(cam.ground(cx0, cx1, ztop0, ztop1, y=roof_h), ident)
    cv.polygon(cam.ground(x0, x1, zr, zr + length, y=body_h), ident, P_LIGHT)
    cv.polygon(cam.poly([(cx0, body_h, zc0), (cx1, body_h, zc0), (cx1, roof_h, ztop0), (cx0, roof_h, ztop0)]), ident)
    gx0, gx1 = cx0 + 0.1, cx1 - 0.1
    z0, z1 = slope_z(gy0, zc0, ztop0), slope_z(gy1, zc0, ztop0)
    cv.polygon(cam.poly([(gx0, gy0, z0), (gx1, gy0, z0), (gx1, gy1, z1), (gx0, gy1, z1)]), ident, P_GLASS)
    # Rear face with wheels below it, tail lights and a number plate.
    for wx0, wx1 in ((x0 + 0.08, x0 + 0.34), (x1 - 0.34, x1 - 0.08)):
        cv.polygon(cam.wall_z(zr + 0.25, wx0, wx1, 0.0, clear + 0.05), ident, P_TIRE)
    cv.polygon(cam.wall_z(zr, x0, x1, clear, body_h), ident)
    for lx0, lx1 in ((x0 + 0.06, x0 + 0.3), (x1 - 0.3, x1 - 0.06)):
        cv.polygon(cam.wall_z(zr, lx0, lx1, body_h - 0.26, body_h - 0.12), ident, P_TAIL)
    cv.polygon(cam.wall_z(zr, xc - 0.26, xc + 0.26, clear + 0.16, clear + 0.28), ident, P_PLATE)


def _draw_person(cv, cam, ident, X, Z, height, stride):
    """Legs, torso with arms, head with hair; all one id (parts for the photo)."""
    s = cam.f / Z
    px, py = cam.xy(X, 0.0, Z)  # feet

    def pt(dx, dy):  # person-local metres -> pixels
        return (px + s * dx, py - s * dy)

    hip, shoulder = 0.48 * height, 0.81 * height
    for sgn in (-1, 1):
        foot = sgn * (0.1 + stride)
        cv.polygon([pt(sgn * 0.02, hip), pt(sgn * 0.19, hip), pt(foot + sgn * 0.07, 0), pt(foot - sgn * 0.07, 0)],
                   ident, P_LEGS)
    for sgn in (-1, 1):  # arms (sleeves), slightly in shade
        cv.polygon([pt(sgn * 0.2, shoulder), pt(sgn * 0.29, shoulder - 0.04), pt(sgn * 0.31, hip - 0.02),
                    pt(sgn * 0.23, hip - 0.02)], ident, P_SHADE)
    cv.polygon([pt(-0.23, shoulder), pt(0.23, shoulder), pt(0.19, hip - 0.04), pt(-0.19, hip - 0.04)], ident)
    hx, hy = pt(0.0, 0.9 * height)
    cv.ellipse(hx, hy - 0.015 * s, 0.105 * s, 0.125 * s, ident, P_HAIR)
    cv.ellipse(hx, hy + 0.02 * s, 0.09 * s, 0.1 * s, ident, P_SKIN)


def _draw_pole(cv, cam, X, Z, height, kind, lit):
    cv.polygon(cam.wall_z(Z, X - 0.07, X + 0.07, 0.0, height), CLASS_IDS["pole"])
    if kind == "sign":
        sign = CLASS_IDS["traffic sign"]
        cx, cy = cam.xy(X, height - 0.35, Z)
        r = cam.f * 0.34 / Z
        cv.ellipse(cx, cy, r, r, sign, P_BORDER)
        cv.ellipse(cx, cy, 0.8 * r, 0.8 * r, sign)
    elif kind == "light":
        light = CLASS_IDS["traffic light"]
        cv.polygon(cam.wall_z(Z, X - 0.17, X + 0.17, height - 0.95, height), light)
        for i, part in enumerate((P_LAMP_R, P_LAMP_Y, P_LAMP_G)):
            cx, cy = cam.xy(X, height - 0.18 - 0.29 * i, Z)
            r = cam.f * 0.1 / Z
            cv.ellipse(cx, cy, r, r, light, part if i == lit else P_LAMP_OFF)


def place_cars(cv, cam, rng, street, objects):
    """2..8 cars: bumper-to-bumper rows parked at the road edges, a few on the road."""
    n = int(rng.integers(2, 9))
    n_road = int(rng.integers(0, min(3, n - 1) + 1))
    n_right = int(rng.integers(0, n - n_road + 1))
    z_min = 0.85 * cam.z_bottom
    for side, count in ((1, n_right), (-1, n - n_road - n_right)):
        z = rng.uniform(z_min, max(z_min + 1, 22.0))
        x = side * (street.road[side] - rng.uniform(1.0, 1.3))
        for _ in range(count):
            length = rng.uniform(3.9, 4.8)
            objects.append(_car_object(cv, cam, rng, x + rng.uniform(-0.1, 0.1), z, length))
            z += length + rng.uniform(0.05, 0.7)  # bumper to bumper: they overlap in the image
    lanes = [x for x in (-1.8, 1.8, 0.0) if -street.road[-1] + 1 < x < street.road[1] - 1]
    taken = []  # (lane, depth) of moving cars, kept 7 m apart so they never intersect
    for _ in range(n_road):
        lane, z = lanes[rng.integers(len(lanes))], rng.uniform(max(z_min, 7.0), 45.0)
        if any(lane == other and abs(z - z_other) < 7.0 for other, z_other in taken):
            z = max(z_other for _, z_other in taken) + 7.0  # behind every other moving car
        taken.append((lane, z))
        objects.append(_car_object(cv, cam, rng, lane, z, rng.uniform(3.9, 4.8)))


def _car_object(cv, cam, rng, xc, zr, length):
    ident = cv.new_id("car", rng.integers(len(STYLES["car"])))
    dims = (length, rng.uniform(1.7, 1.86), rng.uniform(0.95, 1.1), rng.uniform(1.38, 1.5))
    return zr, bind(_draw_car, cv, cam, ident, xc, zr, *dims)


def place_persons(cv, cam, rng, street, objects):
    """0..8 persons in groups of 1-4 standing shoulder to shoulder on the sidewalks."""
    remaining = int(rng.integers(0, 9))
    while remaining > 0:
        size = int(min(remaining, rng.integers(1, 5)))
        side = 1 if rng.random() < 0.5 else -1
        walk_w = street.walk[side]
        x = street.walk_inner(side) + side * rng.uniform(0.4, max(0.5, walk_w - 0.4 - 0.45 * size))
        z = rng.uniform(max(1.2 * cam.z_bottom, 5.0), 35.0)
        for i in range(size):
            ident = cv.new_id("person", rng.integers(len(STYLES["person"])))
            xi, zi = x + side * 0.45 * i, z + rng.normal(0, 0.15)
            args = (ident, xi, zi, rng.uniform(1.6, 1.92), rng.uniform(0.0, 0.12))
            objects.append((zi, bind(_draw_person, cv, cam, *args)))
        remaining -= size


def place_street_furniture(cv, cam, rng, street, objects):
    for _ in range(rng.integers(2, 7)):
        side = 1 if rng.random() < 0.5 else -1
        x = street.walk_inner(side) + side * 0.35
        z = rng.uniform(max(1.5 * cam.z_bottom, 6.0), 70.0)
        kind = rng.choice(["plain", "sign", "light"], p=[0.3, 0.4, 0.3])
        args = (x, z, rng.uniform(3.5, 6.5), kind, int(rng.integers(3)))
        objects.append((z, bind(_draw_pole, cv, cam, *args)))
    for side in (-1, 1):
        if rng.random() < 0.4:  # a row of street trees
            x = street.walk_inner(side) + side * 0.6 * street.walk[side]
            z, step = rng.uniform(max(cam.z_bottom, 6.0), 20.0), rng.uniform(8.0, 14.0)
            while z < 80.0:
                args = (x, z, rng.uniform(1.4, 2.4), rng.uniform(2.2, 3.2))
                objects.append((z, bind(draw_tree, cv, cam, *args)))
                z += step
